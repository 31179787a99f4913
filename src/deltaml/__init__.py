"""DeltaML: models trained on data the buyer never sees.

The buyer's model stays encrypted under its Paillier key while data owners train
it on their own machines; an aggregator combines encrypted updates it cannot read;
an Ethereum contract escrows the payment and settles it by measured contribution.

Importing the package does nothing but define names; heavy modules (web3, sklearn)
load only when used.
"""

__version__ = "0.1.0"
