"""Knowledge uploads: files developers drop in, extracted into chunks with basins."""
