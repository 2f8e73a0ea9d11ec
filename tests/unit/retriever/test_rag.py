"""The README's RAG chain (retriever | prompt | LLM): the spoken words, span times and deep links
reach the LLM's prompt. The LLM is langchain_core's fake; everything else is real (espeak-ng
speech, Whisper-base through faster-whisper, the store)."""

from __future__ import annotations

from typing import Any

import pytest
from clasp_ingest.retriever import ClaspRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import format_timestamp, open_store
from clasp_ingest.transcribe import Transcriber
from clasp_ingest.types import MediaRef, Segment
from tests.unit.retriever.conftest import SPOKEN, fill_spoken


def cite(docs: list[Document]) -> str:
    """The README's formatter: one numbered passage per span, with its times and deep link."""
    return "\n\n".join(
        f"[{i}] {format_timestamp(d.metadata['start_s'])}–{format_timestamp(d.metadata['end_s'])} "
        f"{d.metadata['url']}\n{d.page_content}"
        for i, d in enumerate(docs, 1)
    )


PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Answer from these passages of recordings; cite them as [n] with their links.\n\n{passages}",
        ),
        ("human", "{question}"),
    ]
)


class Prompts(BaseCallbackHandler):
    """Records the messages each chat model call receives."""

    def __init__(self) -> None:
        self.seen: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **_: Any
    ) -> None:
        self.seen.extend(messages)


@pytest.mark.slow
def test_the_spoken_words_times_and_links_reach_the_prompt(
    model: AudioTextEncoder, whisper: Transcriber, spoken_talk: tuple[MediaRef, list[Segment]]
) -> None:
    llm = FakeListChatModel(responses=["Chemical energy for plants [1]."])
    prompts = Prompts()
    with open_store(url=":memory:") as store:
        fill_spoken(store, model, spoken_talk)
        retriever = ClaspRetriever(store=store, model=model, k=2, transcribe="lazy", transcriber=whisper)
        chain = (
            {"passages": retriever | cite, "question": RunnablePassthrough()}
            | PROMPT
            | llm
            | StrOutputParser()
        )

        answer = chain.invoke(SPOKEN[0], config={"callbacks": [prompts]})
        docs = retriever.invoke(SPOKEN[0])

    assert answer == "Chemical energy for plants [1]."
    [messages] = prompts.seen
    system, human = (m.text for m in messages)
    assert human == SPOKEN[0]
    assert "photosynthesis" in system.lower() and "sunlight" in system.lower()  # the words, not titles
    for i, doc in enumerate(docs, 1):
        assert doc.metadata["transcript"] and doc.page_content in system
        span = f"{format_timestamp(doc.metadata['start_s'])}–{format_timestamp(doc.metadata['end_s'])}"
        assert f"[{i}] {span} {doc.metadata['url']}" in system
        assert doc.metadata["url"].startswith(spoken_talk[0].uri + "#t=")
