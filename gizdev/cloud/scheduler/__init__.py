"""The Open API scheduler: when schedules fall due (recurrence), what a schedule request says (requests) and the
runner that sends the commands (runner, started by ``CloudServer``; import it from its module). The storage is
:mod:`gizdev.cloud.storage.schedules`, the endpoints :mod:`gizdev.cloud.http.scheduler`.
"""

from gizdev.cloud.scheduler.recurrence import WEEKDAYS, Recurrence
from gizdev.cloud.scheduler.requests import ScheduleRequest, Task, parse_device_schedule, parse_legacy_schedule

__all__ = ["WEEKDAYS", "Recurrence", "ScheduleRequest", "Task", "parse_device_schedule", "parse_legacy_schedule"]
