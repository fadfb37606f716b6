"""The safety net: every morning, yesterday for every station, whatever the sensors did."""

import datetime as dt

from dagster import DefaultScheduleStatus, RunRequest, ScheduleDefinition, ScheduleEvaluationContext, schedule

from meteo_assets.sensors import TRIGGER_TAG, automation_on
from meteo_assets.transform.contract import PARIS

SAFETY_NET_SCHEDULE = "daily_safety_net"
SAFETY_NET_CRON = "0 6 * * *"  # 06:00 Europe/Paris, when yesterday's last slots are long published


def build_safety_net_schedule(job_name: str) -> ScheduleDefinition:
    @schedule(
        name=SAFETY_NET_SCHEDULE,
        job_name=job_name,
        cron_schedule=SAFETY_NET_CRON,
        execution_timezone="Europe/Paris",
        default_status=DefaultScheduleStatus.RUNNING if automation_on() else DefaultScheduleStatus.STOPPED,
        description="06:00 Europe/Paris: yesterday's partition of every enabled station, raw → clean → daily, "
        "in case a sensor tick missed something (portal down, daemon stopped).",
    )
    def daily_safety_net(context: ScheduleEvaluationContext) -> RunRequest:
        scheduled = context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)
        yesterday = scheduled.astimezone(PARIS).date() - dt.timedelta(days=1)
        return RunRequest(
            run_key=f"safety-net:{yesterday}",
            partition_key=yesterday.isoformat(),
            tags={TRIGGER_TAG: SAFETY_NET_SCHEDULE},
        )

    return daily_safety_net
