"""`argen serve`: a local web app over the Pipeline that samples every method and streams each decode step."""
