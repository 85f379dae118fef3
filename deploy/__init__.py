"""Building and checking the deployment package (`make package`); never deployed itself."""
