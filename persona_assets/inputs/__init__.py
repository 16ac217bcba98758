"""What the user gives: the eval set, leakage rates, prompt safety, response quality, and readers of other people's file formats. No dagster import."""
