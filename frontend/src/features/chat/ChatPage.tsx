/** The chat page (being built: conversations, streaming answers, feedback). */
export function ChatPage() {
  return (
    <section aria-labelledby="chat-title">
      <h1 id="chat-title">Chat</h1>
    </section>
  );
}
