"""Federation services: packet validation, merging and sync arrive with the federation issue."""
