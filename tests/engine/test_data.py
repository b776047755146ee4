"""Training data: the token stream is the same whether the encoder gives lists or arrays."""

from __future__ import annotations

import numpy as np

from constellation.engine import tiny
from constellation.engine.data import Example, TokenStream


def test_a_token_stream_is_the_same_from_list_and_array_encoders() -> None:
    coordizer = tiny.coordizer()
    doc = tiny.corpus()[0]
    examples: list[Example] = [
        doc,
        {"text": "naïve café\u00a0 text"},
        {"text": ""},
        {"prompt": "Q: what is a basin?", "completion": " A: a point on the simplex."},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ]
    pieces = [  # (text, counts for the loss) of each example
        [(doc, True)],
        [("naïve café\u00a0 text", True)],
        [("", True)],
        [("Q: what is a basin?", False), (" A: a point on the simplex.", True)],
        [("user: ", False), ("hi\n", False), ("assistant: ", False), ("yo\n", True)],
    ]
    expected_ids: list[int] = []
    expected_mask: list[bool] = []
    for example in pieces:
        for text, counts in example:
            ids = coordizer.encode(text)
            expected_ids += ids
            expected_mask += [counts] * len(ids)
        expected_ids.append(coordizer.eot_id)
        expected_mask.append(True)
    by_list = TokenStream.from_examples(examples, coordizer.encode, coordizer.eot_id)
    by_array = TokenStream.from_examples(examples, coordizer.encode_large, coordizer.eot_id)
    for stream in (by_list, by_array):
        assert stream.ids.dtype == np.int64 and stream.mask.dtype == np.bool_
        assert stream.ids.tolist() == expected_ids and stream.mask.tolist() == expected_mask
