"""A run's speaker turns in the formats other tools open, and the run's HTML report."""
