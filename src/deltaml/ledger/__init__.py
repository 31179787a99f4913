"""Money on Ethereum: the Marketplace contract, its artifact and a Python client.

``deltaml.ledger.payouts`` is pure Python (no web3); the web3 client loads only
when imported from its own module, so roles can use the payment rule without
pulling the chain stack in.
"""
