// Shapes of the upload API's JSON (docs/api.md "Uploads", contract in docs/ui-knowledge.md).

import type { Job } from '../jobs/types';

export type FileType = 'txt' | 'md' | 'html' | 'pdf' | 'jsonl' | 'csv';
export type UploadStatus = 'ready' | 'pending' | 'failed';

export interface RoutedKernel {
  kernel: number;
  role: string;
  /** Fisher–Rao distance from the upload's basin to the kernel's anchor. */
  distance: number;
}

export interface Upload {
  id: number;
  original_name: string;
  sha256: string;
  size_bytes: number;
  content_type: string;
  file_type: FileType | string;
  domain: string;
  priority: number;
  status: UploadStatus | string;
  status_detail: string;
  error: string;
  n_chunks: number;
  n_tokens: number;
  n_records: number;
  n_characters: number;
  /** The first 2000 characters of the extracted text. */
  preview: string;
  routed: RoutedKernel[];
  uploaded_by: string | null;
  created_at: string;
}

export interface UploadResult {
  file: string;
  upload: Upload | null;
  duplicate: boolean;
  error: string | null;
}

/** `POST /api/v1/uploads/`: 201 when every file was stored, 207 when some were, 400 when none. */
export interface UploadResponse {
  results: UploadResult[];
  job: Job | null;
  /** Why no job was queued although `train` was asked (e.g. no kernel was routed). */
  job_error?: string | null;
}

/** `upload.status` on the `learning` topic. */
export interface UploadStatusEvent {
  kind: 'upload.status';
  upload: Upload;
}

/**
 * The 8 primary roles, one per simple root of E8, in the order of `Role` in
 * constellation/models.py. An upload's domain is one of them, or `auto` (routed by content).
 */
export const ROLES = [
  'HEART',
  'PERCEPTION',
  'MEMORY',
  'ACTION',
  'PREDICTION',
  'ETHICS',
  'META',
  'INTEGRATION',
] as const;

/** Extensions the server extracts text from. */
export const ACCEPTED_EXTENSIONS = ['.txt', '.md', '.html', '.htm', '.pdf', '.jsonl', '.csv'] as const;
