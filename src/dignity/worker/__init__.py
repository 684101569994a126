"""The background-job face: task bodies (:mod:`.tasks`), the engines that run them (the embedded
runner, :mod:`.embedded`, or Celery, :mod:`.celery_app`), chosen and started by :mod:`.engine`,
and the periodic work either one schedules (:mod:`.periodic`). Imports the composition root;
nothing below it imports this package."""
