"""The library around the `covid_chestxray_seg` builder: it turns the recipe into the
folder the Hugging Face Hub serves, publishes it, exports it back to files and checks it.

One module per concern (see the project README's layout section). Importing the package
itself loads nothing heavy: the test suites of both `datasets` 3.x and 5.x import its
`testing` helpers.
"""
