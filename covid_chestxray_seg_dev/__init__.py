"""Development tools shared by the tests, compat/ and the benchmark; not shipped in the wheel.

hub      a strict local Hub on 127.0.0.1 (server), and the pytest plugin that points a test
         session's datasets and huggingface_hub at it (plugin)
browser  Debian's headless Chromium over the DevTools pipe: loads a page (the HTML report) and
         reports failed requests, console errors, undecoded pictures and a screenshot
"""
