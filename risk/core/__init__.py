"""The foundations every stage uses: settings, errors, atomic files, templates, cron, the clock, the database and crash points."""
