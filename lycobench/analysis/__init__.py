"""The paper's analysis on tidy tables: rank normalisation, aggregation, bootstrap CIs, paired comparisons,
factor levels, criteria, best checkpoints and overfitting alarms (reference/paper-protocol.md, sections 6-8).

Every function takes and returns pandas frames (or arrays) and writes no file, so it can be tested on
synthetic tables; CatBoost + SHAP in shap.

Vocabulary. A *checkpoint* is (cell, seed, step); step 0 is the base model, which is shown everywhere but
never enters a rank pool. A *metric column* is (metric, encoder, level, prompt_type): the paper ranks each
column separately. *Scopes* are the paper's aggregation levels: leaf (sub-class), class (concept),
category, and ``all`` (the mean over categories, a lycobench addition; the paper never averages across
categories).

Modules: columns (vocabulary), scores, configs, criteria, pareto, shap; this package exports their
public names.
"""

from .columns import (
    BASE,
    CI_LEVEL,
    CKPT,
    CRITERIA,
    EXTRA,
    FACTORS,
    FALLBACKS,
    ID,
    N_BOOT,
    NATIVE,
    SCATTER_PAIRS,
    SCOPES,
    category_of_leaves,
    column_label,
    criteria_for,
    directions,
    factor_columns,
    measured,
    paper_levels,
    resolve,
    scatter_pairs_for,
)
from .configs import comparison_pairs, config_table, paired_comparisons
from .criteria import (
    LEARNED,
    OVERFIT_TOL,
    best_checkpoints,
    concept_learning,
    criteria_scores,
    learning_warning,
    overfitting_alarms,
    table1,
    table1_configs,
)
from .pareto import correlations, pareto_mask, pareto_table, point_estimates
from .scores import EXACT_UNITS, aggregate, cluster_bootstrap, rank_normalise, seed_summary
from .shap import (
    CAT_FEATURES,
    CATBOOST_PARAMS,
    CURVE_EXTRAS,
    FEATURES,
    MIN_ROWS,
    R2_RELIABLE,
    SHAP_TARGETS,
    ShapResult,
    curve_columns,
    fit_shap,
    seed_folds,
    shap_rows,
    shap_table,
    shap_targets,
)

__all__ = [
    "ID",
    "CKPT",
    "FACTORS",
    "EXTRA",
    "factor_columns",
    "BASE",
    "NATIVE",
    "SCOPES",
    "CRITERIA",
    "FALLBACKS",
    "N_BOOT",
    "CI_LEVEL",
    "resolve",
    "measured",
    "criteria_for",
    "scatter_pairs_for",
    "paper_levels",
    "directions",
    "SCATTER_PAIRS",
    "column_label",
    "category_of_leaves",
    "rank_normalise",
    "aggregate",
    "cluster_bootstrap",
    "EXACT_UNITS",
    "seed_summary",
    "config_table",
    "comparison_pairs",
    "paired_comparisons",
    "criteria_scores",
    "table1_configs",
    "table1",
    "best_checkpoints",
    "OVERFIT_TOL",
    "overfitting_alarms",
    "LEARNED",
    "concept_learning",
    "learning_warning",
    "point_estimates",
    "pareto_mask",
    "pareto_table",
    "correlations",
    "FEATURES",
    "CAT_FEATURES",
    "CATBOOST_PARAMS",
    "R2_RELIABLE",
    "MIN_ROWS",
    "ShapResult",
    "SHAP_TARGETS",
    "CURVE_EXTRAS",
    "curve_columns",
    "shap_targets",
    "shap_rows",
    "seed_folds",
    "fit_shap",
    "shap_table",
]
