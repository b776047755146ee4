// Shapes of `/api/v1/conversations/` and `POST /api/v1/chat/` (docs/inference.md, "Chat").

export interface ConversationSummary {
  id: number;
  title: string;
  created_at: string;
  updated_at: string;
  message_count: number;
}

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export interface UserMessage {
  role: 'user';
  content: string;
  created_at: string;
}

export type Feedback = '' | 'up' | 'down';

/** Who answered and why (docs/inference.md, "Routing"): `kernel`, a trained kernel within its
 * radius; `trunk`, the bare trunk (under a standby kernel's name, or none); `pinned`, a kernel model. */
export type AnsweredBy = 'kernel' | 'trunk' | 'pinned';

/** One entry of an answer's route, the answering kernel first (kernel null: the bare trunk). The
 * first entry of answers stored since routing explains itself has `answered_by` and `reason`. */
export interface RoutedKernel {
  kernel: number | null;
  role: string | null;
  distance: number | null;
  answered_by?: AnsweredBy;
  reason?: string;
  radius?: number | null;
  nearest?: { kernel: number; distance: number; radius: number | null };
}

/** An answer: the stored interaction with what routed and measured it. */
export interface AssistantMessage {
  id: number;
  role: 'assistant';
  content: string;
  created_at: string;
  model: string;
  kernel: number | null;
  kernel_role: string;
  distance: number | null;
  routed: RoutedKernel[];
  phi: number | null;
  kappa: number | null;
  regime: string;
  ttft_ms: number | null;
  tokens_per_s: number | null;
  completion_tokens: number;
  done_reason: string;
  feedback: Feedback;
  suggested_answer: string;
}

export type Message = UserMessage | AssistantMessage;

export interface ConversationDetail extends Omit<ConversationSummary, 'message_count'> {
  messages: Message[];
}

/** One line of the NDJSON stream of `POST /api/v1/chat/`. */
export type ChatLine =
  | { type: 'conversation'; conversation: ConversationSummary }
  | { type: 'token'; content: string }
  | { type: 'done'; message: AssistantMessage }
  | { type: 'error'; error: string };

export interface ChatRequest {
  conversation: number | null;
  content: string;
  model?: string;
  options?: { num_predict?: number };
}
