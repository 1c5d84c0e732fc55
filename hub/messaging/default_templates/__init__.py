"""Default message templates, one JSON file per name; a package so setuptools ships its *.json."""
