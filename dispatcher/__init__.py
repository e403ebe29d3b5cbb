"""The dispatcher: CTS job events on Kafka -> job specs on S3 -> one runner per attempt.

``python -m dispatcher --config FILE``; the loop is in :mod:`dispatcher.loop`.

The modules form layers: a module imports only modules of the layers below its own
(:data:`LAYERS`, checked by ``tests/unit/test_dispatcher_layers.py``), never one of its
own layer or above. From the bottom:

1. records and interfaces, which import no other module of the dispatcher: events and
   their errors (``events``, ``errors``), time (``clock``), offsets and runner slots
   (``offsets``, ``slots``), dead letters (``dlq``), the status page (``status_page``),
   and what a launcher is with the registry of launcher kinds (``launch``);
2. the parts, each about one thing: S3 notifications (``s3events``), the CTS client
   (``cts``), retry policies (``retry``), metrics (``metrics``), the Kafka intake
   (``intake``), the attempt ledger on S3 (``ledger``), the configuration (``config``),
   and the launchers, each owning its settings (``launchers``: subprocess and Docker;
   ``kubernetes``);
3. what combines parts: the event sources (``sources``), the service breakers
   (``breakers``) and the stages an event goes through, each a frozen record of its own
   (``stages``);
4. what finishing an event tells (``finishing``: outcome counts, the recent events of
   ``/status``, dead-letter streaks);
5. the loop (``loop``);
6. the entry points: ``python -m dispatcher`` (``__main__``) and the DLQ tool
   (``dlq_tool``).

The launcher kinds' modules (layer 2) are loaded by name by ``launch`` (layer 1) when
the configuration chooses them, which is no import: ``launch`` does not depend on them.
"""

#: The dispatcher's modules by layer, from the bottom (see above).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("events", "errors", "clock", "offsets", "slots", "dlq", "status_page", "launch"),
    ("s3events", "cts", "retry", "metrics", "intake", "ledger", "config", "launchers",
     "kubernetes"),
    ("sources", "breakers", "stages"),
    ("finishing",),
    ("loop",),
    ("__main__", "dlq_tool"),
)
