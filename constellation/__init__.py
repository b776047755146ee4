"""Kernels: the trunk's LoRA adapters, their E8 anchors and roles, and the inference views."""
