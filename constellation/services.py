"""Kernel services. Inference and routing over the engine arrive with the engine and inference
issues; views and tasks call these functions, never the engine directly."""
