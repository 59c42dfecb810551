"""Development tools shared by the tests, compat/ and the benchmark; not shipped in the wheel.

hub   a strict local Hub on 127.0.0.1 (server), and the pytest plugin that points a test
      session's datasets and huggingface_hub at it (plugin)
"""
