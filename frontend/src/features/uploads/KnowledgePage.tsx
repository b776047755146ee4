/** Knowledge & training (being built: the upload panel and the fine-tuning queue). */
export function KnowledgePage() {
  return (
    <section aria-labelledby="knowledge-title">
      <h1 id="knowledge-title">Knowledge &amp; training</h1>
    </section>
  );
}
