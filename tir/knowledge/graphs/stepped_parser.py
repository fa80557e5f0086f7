"""spaCy's greedy dependency parser, its transition loop stepped from Python: same Docs, less time.

spaCy's compiled loop (``Parser.greedy_parse``) runs without the GIL but takes and drops it again for every hidden
unit of every state at every step (spaCy 3.8's compiled ``predict_states`` calls ``PyGILState_Ensure`` and
``PyGILState_Release`` inside that loop): a sampling profile put about 14% of one parse-graphs process's time in
those lock hand-offs. :func:`install` puts one component in the parser's place that steps the same model as
spaCy's own step model does (``ParserStepModel``: the token ids of each state's features, the compiled feature
sums with bias and maxout, the output layer through the model's ops), then applies the parser's compiled
``transition_states``, each step one batch of states with the GIL held throughout. A whole ``pipe`` batch is one
batch of states (spaCy's ``Parser.pipe`` parses quarters of it, sorted by length): a state's scores depend on
its own features only, and fewer, larger steps spread the per-step work over more states. The Docs were identical
to spaCy's parser on every caption compared (15,000 real-style captions, both gold sets).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

COMPONENT = "tir_stepped_parser"
PARSER = "parser"


class SteppedParser:
    """Runs ``parser``'s greedy parse one transition step at a time over a batch of states."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def __call__(self, doc):
        self.parser.set_annotations([doc], self._parse([doc]))
        return doc

    def pipe(self, docs: Iterable, batch_size: int = 256) -> Iterator:
        """The Docs, in their order, each batch of ``batch_size`` parsed as one batch of states."""
        from spacy.util import minibatch

        error_handler = self.parser.get_error_handler()
        for batch in minibatch(docs, size=batch_size):
            batch = list(batch)
            try:
                self.parser.set_annotations(batch, self._parse(batch))
                yield from batch
            except Exception as error:  # spaCy's contract: the pipeline's error handler decides
                error_handler(self.parser.name, self.parser, batch, error)

    def _parse(self, docs: list) -> list:
        """The final parse states of ``docs`` (greedy: the best valid transition at each step)."""
        import numpy

        parser = self.parser
        if not any(len(doc) for doc in docs):
            return parser.moves.init_batch(docs)
        parser._ensure_labels_are_added(docs)
        batch = parser.moves.init_batch(docs)
        model = parser.model.predict(docs)  # a ParserStepModel: each token's hidden features computed once
        hidden, upper = model.state2vec, model.vec2scores
        weights, bias = upper.get_param("W"), upper.get_param("b")
        unseen = numpy.flatnonzero(model._class_mask == 0)  # classes the model never saw: scored lowest
        states = [state for state in batch if not state.is_final()]
        while states:  # the step of spaCy's step_forward (prediction), without its per-call layer dispatch
            scores = upper.ops.gemm(hidden.predict(model.get_token_ids(states)), weights, trans2=True)
            scores += bias
            if unseen.size:
                scores[:, unseen] = numpy.nanmin(scores)
            states = parser.transition_states(states, scores)
        model.clear_memory()
        return batch


def steppable(nlp) -> bool:
    """True when ``nlp`` has an enabled greedy parser whose model this stepping reproduces: spaCy's transition
    model with maxout hidden units and a linear output layer, on the CPU."""
    from spacy.ml import tb_framework
    from thinc.api import NumpyOps
    from thinc.layers import linear

    if PARSER not in nlp.pipe_names:
        return False
    parser = nlp.get_pipe(PARSER)
    model = getattr(parser, "model", None)
    if getattr(parser, "cfg", {}).get("beam_width") != 1 or getattr(model, "_func", None) is not tb_framework.forward:
        return False
    lower, upper = model.get_ref("lower"), model.get_ref("upper")
    return bool(model.attrs.get("has_upper")) and lower.has_dim("nP") is True and lower.get_dim("nP") >= 2 \
        and upper._func is linear.forward and all(isinstance(node.ops, NumpyOps) for node in model.walk())


def install(nlp) -> bool:
    """Replace the parser of ``nlp`` (disabled, kept) by a :class:`SteppedParser` when :func:`steppable`;
    returns whether it did."""
    from spacy.language import Language

    if not steppable(nlp):
        return False
    if COMPONENT not in Language.factories:
        Language.factory(COMPONENT, func=lambda nlp, name: SteppedParser(nlp.get_pipe(PARSER)))
    nlp.add_pipe(COMPONENT, after=PARSER)
    nlp.disable_pipe(PARSER)
    return True
