"""The dispatcher's own refusal of one event.

An :class:`EventRejected` is raised by the dispatcher's logic about one event (the job
document is unusable, the job never completed, an id is not usable): the event goes to
the DLQ and the loop moves on. Failures of the services it calls are
:class:`~common.faults.ServiceFailure`, classified by :mod:`common.faults`; anything else
a step raises is the event's fault too (see :mod:`dispatcher.loop`).
"""


class EventRejected(Exception):
    """This event cannot be processed, now or later: dead-letter it."""
