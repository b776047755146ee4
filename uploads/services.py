"""Upload services: extraction, chunking and basins arrive with the fine-tuning issue."""
