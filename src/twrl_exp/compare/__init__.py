"""Is A better than B? ``twrl-compare``: comparisons of agents over seeds (IQM, mean, the
probability of improvement, performance profiles, aggregate learning curves), the decision and
the seeds it needs, and ``--until-decided`` to train them (:mod:`twrl_exp.compare.cli`)."""
