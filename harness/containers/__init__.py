"""callwall in a container: the Docker engine to build and run the image with
(`engine.py`), and the runc wrapper a private engine may need (`runc_wrapper.py`)."""
