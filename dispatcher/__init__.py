"""The dispatcher: CTS job events on Kafka -> job specs on S3 -> one runner per attempt.

``python -m dispatcher --config FILE``; the loop is in :mod:`dispatcher.loop`.
"""
