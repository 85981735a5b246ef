"""The style sensor: a style folder dropped into data/styles/ becomes a style partition and is built.

One tick: every style folder whose files changed since the last tick is validated (bookbug_assets.style_intake);
a valid one adds its `styles` partition and requests style_dataset + style_lora for it, so the style exists before
a book in it is drawn; an invalid one gets `style.rejected.txt` naming the file and the problem. No reload of the
definitions is needed: styles are dynamic partitions. A folder whose dataset is already built as it is (make demo
built it) only gets its partition, never a second run.
"""

import json

import dagster as dg

from bookbug_assets.defs.partitions import styles_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.defs.styles.assets import style_dataset, style_lora
from bookbug_assets.style_intake import scan_style_folder


@dg.sensor(name="style_folder_sensor", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=[style_dataset, style_lora],
           description="Watches the styles folder: a new or changed style folder is validated, added as a style "
                       "partition and built (style_dataset, style_lora); an invalid one gets style.rejected.txt.")
def style_folder_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
    try:
        seen = json.loads(context.cursor) if context.cursor else {}
    except ValueError:
        seen = {}
    scan = scan_style_folder(storage.styles_path, seen if isinstance(seen, dict) else {}, storage.store(),
                             context.log)
    for name, reason in scan.rejected.items():
        context.log.warning(f"style {name!r} rejected: {reason}")
    cursor = json.dumps(scan.seen, sort_keys=True)
    existing = set(context.instance.get_dynamic_partitions(styles_partitions.name))
    new = sorted(set(scan.accepted + scan.unchanged_built) - existing)
    partition_requests = [styles_partitions.build_add_request(new)] if new else []
    run_requests = [dg.RunRequest(run_key=f"style:{name}:{scan.seen[name][:16]}", partition_key=name,
                                  asset_selection=[style_dataset.key, style_lora.key],
                                  tags={"bookbug/style": name})
                    for name in scan.accepted]
    if not run_requests and not partition_requests:
        return dg.SensorResult(skip_reason="no new or changed style folders", cursor=cursor)
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


@dg.definitions
def style_sensor_defs() -> dg.Definitions:
    return dg.Definitions(sensors=[style_folder_sensor])
