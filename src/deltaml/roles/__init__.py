"""What the buyer, the aggregator and a data owner do — no HTTP, no web3, no SQL.

The same role code runs in a unit test, in the one-process simulation and behind
the services.
"""

from deltaml.roles.aggregator import Aggregator, TrainingRecord
from deltaml.roles.buyer import ModelBuyer
from deltaml.roles.data_owner import DataOwner

__all__ = ["Aggregator", "DataOwner", "ModelBuyer", "TrainingRecord"]
