"""Serving: the scheduler, runner processes (engine), hardware selection, the server entry."""
