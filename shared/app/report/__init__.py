"""The history report: the model read from the database and its text and HTML rendering."""
