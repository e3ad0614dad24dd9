"""Operating the app: reports, the error log, start-up, instances, backups, checks, metrics."""
