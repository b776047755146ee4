"""Learning: fine-tuning jobs, the learning log and the autonomous loop."""
