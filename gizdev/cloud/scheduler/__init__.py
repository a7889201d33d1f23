"""The Open API scheduler: when schedules fall due (recurrence) and what a schedule request says (requests).

Not served yet: the storage of schedules and runs, the runner (claims, retries, logs) and the HTTP handlers are the
next steps of the scheduler issue; these modules are their pure core.
"""

from gizdev.cloud.scheduler.recurrence import WEEKDAYS, Recurrence
from gizdev.cloud.scheduler.requests import ScheduleRequest, Task, parse_device_schedule, parse_legacy_schedule

__all__ = ["WEEKDAYS", "Recurrence", "ScheduleRequest", "Task", "parse_device_schedule", "parse_legacy_schedule"]
