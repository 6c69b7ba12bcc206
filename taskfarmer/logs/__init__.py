"""What tasks printed and how each execution ended: the task logs (:mod:`.tasklogs`) and the
workdir's job log (:mod:`.joblog`)."""
