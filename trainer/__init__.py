"""absl command-line entry points of improve_nas."""
