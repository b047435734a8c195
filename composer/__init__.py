"""Page composer."""
