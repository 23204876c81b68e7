"""Dates as every page shows them, ISO and 24-hour (times are UTC), in the admin too (not "July 1, 2021, 6 p.m.")."""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
