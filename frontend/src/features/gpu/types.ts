export interface HostSample {
  hostname: string;
  cpu_percent: number | null;
  cpu_count: number | null;
  load_avg: (number | null)[] | null;
  memory_used: number | null;
  memory_total: number | null;
  disk_used: number | null;
  disk_total: number | null;
  disk_path: string;
}

export interface GpuProcess {
  pid: number;
  name: string;
  memory_used: number | null;
}

export interface GpuDevice {
  index: number;
  name: string;
  uuid: string;
  utilization_gpu: number | null;
  utilization_memory: number | null;
  memory_used: number | null;
  memory_total: number | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  clock_sm_mhz: number | null;
  clock_mem_mhz: number | null;
  processes: GpuProcess[];
}

/** One sample of one node (`gpu.sample` on the `gpu` topic, once a second per sampling node). */
export interface GpuSample {
  kind: 'gpu.sample';
  time: string;
  node: string;
  host: HostSample;
  gpu_status: 'ok' | 'absent' | 'error';
  gpu_message: string;
  gpus: GpuDevice[];
}

export interface GpuHistory {
  kind: 'gpu.history';
  samples: GpuSample[];
}

export type GpuPayload = GpuSample | GpuHistory | { kind: string };
