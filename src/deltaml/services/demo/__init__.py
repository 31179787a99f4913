"""``deltaml demo``: a whole marketplace on one machine, every party its own process.

It starts a chain (the embedded EVM served over JSON-RPC, unless ``--chain-url``
names a node such as anvil), an aggregator, a buyer node and five data-owner
nodes on 127.0.0.1, gives each owner a share of a data set (``--dataset``:
diabetes by default, breast_cancer or a CSV file) as a CSV file, and has the
buyer ask for a model (``--model linear|logistic``, by default by the data set's
task). Everything after that is the services' own doing over HTTP and the
contract: offers, acceptances, training, metrics, contributions, settlement and
withdrawals. At the end it prints the model's test MSE (linear) or AUC
(logistic) next to scikit-learn's, the contributions, what the chain paid and
refunded (checked: payouts + refund = deposit), and whether the evidence verifies.

==================  ==============================================================
:mod:`.config`      :class:`DemoConfig`, :class:`DemoResult`
:mod:`.processes`   :class:`LocalMarket`: the chain and node processes, start/stop
:mod:`.steps`       the steps over running services (clients and URLs in): register,
                    request, follow the training, withdrawals, payouts + refund =
                    deposit, scores and evidence, the result
:mod:`.run`         :func:`run_demo`: the steps in order
:mod:`.report`      the printed summary (:func:`report_lines`)
:mod:`.command`     ``deltaml demo``'s options
==================  ==============================================================
"""

from deltaml.services.demo.command import add_demo_parser, run_demo_command
from deltaml.services.demo.config import (
    DEFAULT_DIR,
    DEMO_CHALLENGE_WINDOW_S,
    MARKER,
    DemoConfig,
    DemoResult,
)
from deltaml.services.demo.processes import LocalMarket, make_demo_ca, write_shares
from deltaml.services.demo.report import print_report, report_lines
from deltaml.services.demo.run import demo_data, run_demo
from deltaml.services.demo.steps import (
    check_paid_in_full,
    model_scores,
    ok,
    wait_model,
    wait_paid_out,
    wait_settlement,
    wait_withdrawals,
)

__all__ = [
    "DEFAULT_DIR",
    "DEMO_CHALLENGE_WINDOW_S",
    "MARKER",
    "DemoConfig",
    "DemoResult",
    "LocalMarket",
    "add_demo_parser",
    "check_paid_in_full",
    "demo_data",
    "make_demo_ca",
    "model_scores",
    "ok",
    "print_report",
    "report_lines",
    "run_demo",
    "run_demo_command",
    "wait_model",
    "wait_paid_out",
    "wait_settlement",
    "wait_withdrawals",
    "write_shares",
]
