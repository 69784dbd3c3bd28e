"""Route strings of every page (one place, so links and tests agree)."""

HOME = "/"
IDE = "/ide"
SCHEDULES = "/schedules"
INVENTORY = "/inventory"
PROVIDERS = "/providers"
