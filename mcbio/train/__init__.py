"""Composer trainer assembly: phases, optimizer groups, schedules, checkpoints."""
