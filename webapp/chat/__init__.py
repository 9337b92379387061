"""One chat turn (`turn.ChatTurn`) and the prompt it sends (`prompt.build_prompt`)."""
