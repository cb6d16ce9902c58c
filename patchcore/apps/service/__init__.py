"""The inspection service: a model held in memory behind HTTP, its history and the review page."""
