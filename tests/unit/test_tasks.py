from shardline.models import tasks


def test_items_are_seeded_and_hold_their_answer():
    a = tasks.items_for_length(7, 5, 300)
    assert a == tasks.items_for_length(7, 5, 300)
    for item in a:
        key = item.prompt.rsplit("code of ", 1)[1].split(" ?")[0]
        assert f"The code of {key} is {item.answer} ." in item.prompt


def test_context_length_tracks_the_request():
    for words in (100, 400, 1000):
        lengths = [len(i.prompt.split()) for i in tasks.items_for_length(1, 10, words)]
        assert all(0.7 * words < n < 1.3 * words for n in lengths), (words, lengths)
