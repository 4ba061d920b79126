"""Instructor-only half of the course package: hidden checks, answer catalogue, pipeline.

Never shipped to students (the student bundle test proves it).
"""
