#!/usr/bin/env python
"""Django's command-line utility for wealthmetrics."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wealthmetrics.settings")
    from django.core.management import execute_from_command_line

    from wealthmetrics.env import bad_settings_in_one_line

    with bad_settings_in_one_line():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
