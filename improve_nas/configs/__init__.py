"""Config files: `--config=improve_nas/configs/NAME.py`."""
