"""Student-facing checks and lecture helpers (shipped with the student bundle)."""
