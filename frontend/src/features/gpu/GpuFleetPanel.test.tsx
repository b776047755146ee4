import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { at, renderLive } from '../dashboard/testing';
import { addSamples, GpuFleetPanel, WINDOW_MS } from './GpuFleetPanel';
import type { GpuDevice, GpuSample } from './types';

const GiB = 1024 ** 3;

function sample(seconds: number, cpu: number, gpus: GpuDevice[] = []): GpuSample {
  return {
    kind: 'gpu.sample',
    time: at(seconds),
    node: 'node-a',
    host: {
      hostname: 'node-a',
      cpu_percent: cpu,
      cpu_count: 2,
      load_avg: [1.5, 1.2, 0.9],
      memory_used: 3 * GiB,
      memory_total: 8 * GiB,
      disk_used: 40 * GiB,
      disk_total: 100 * GiB,
      disk_path: '/var/qig',
    },
    gpu_status: gpus.length ? 'ok' : 'absent',
    gpu_message: gpus.length
      ? ''
      : 'No NVIDIA GPU on this node: NVML could not be loaded (libnvidia-ml.so.1 not found)',
    gpus,
  };
}

const device: GpuDevice = {
  index: 0,
  name: 'NVIDIA H100',
  uuid: 'GPU-1',
  utilization_gpu: 87,
  utilization_memory: 40,
  memory_used: 20 * GiB,
  memory_total: 80 * GiB,
  temperature_c: 61,
  power_w: 350,
  power_limit_w: 700,
  clock_sm_mhz: 1980,
  clock_mem_mhz: 2619,
  processes: [{ pid: 42, name: 'celery', memory_used: 19 * GiB }],
};

describe('GpuFleetPanel', () => {
  it('says plainly that a node has no GPU and still charts its host', () => {
    const { send } = renderLive(<GpuFleetPanel />);
    expect(screen.getByText('Loading the device samples…')).toBeInTheDocument();
    send('gpu', { kind: 'gpu.history', samples: [sample(0, 10), sample(1, 20)] });
    expect(screen.getByTestId('no-gpu')).toHaveTextContent(
      'No GPU on node-a: No NVIDIA GPU on this node: NVML could not be loaded',
    );
    expect(screen.queryByTestId('gpu-card')).toBeNull();
    expect(screen.getByTestId('host-cpu')).toHaveTextContent('20 %');
    expect(screen.getByTestId('host-memory')).toHaveTextContent('38 %');
    expect(screen.getByText('3.0 GiB of 8.0 GiB')).toBeInTheDocument();
    expect(screen.getByText('40.0 GiB of 100.0 GiB on /var/qig')).toBeInTheDocument();
    expect(screen.getByRole('img', { name: /CPU percent: 2 points, latest 20/ })).toBeInTheDocument();

    send('gpu', sample(2, 55));
    expect(screen.getByTestId('host-cpu')).toHaveTextContent('55 %');
    expect(screen.getByRole('img', { name: /CPU percent: 3 points, latest 55/ })).toBeInTheDocument();
  });

  it('draws a card per GPU with its measured numbers', () => {
    const { send } = renderLive(<GpuFleetPanel />);
    send('gpu', { kind: 'gpu.history', samples: [] });
    expect(screen.getByText(/No node has reported a device sample yet/)).toBeInTheDocument();
    send('gpu', sample(0, 30, [device]));
    const card = screen.getByTestId('gpu-card');
    expect(card).toHaveTextContent('GPU 0 · NVIDIA H100');
    expect(card).toHaveTextContent('87 %');
    expect(card).toHaveTextContent('20.0 GiB of 80.0 GiB');
    expect(card).toHaveTextContent('61 °C');
    expect(card).toHaveTextContent('350 / 700 W');
    expect(card).toHaveTextContent('celery (pid 42)');
    expect(screen.queryByTestId('no-gpu')).toBeNull();
  });

  it('shows a sampler error as an error', () => {
    const { send } = renderLive(<GpuFleetPanel />);
    send('gpu', {
      kind: 'gpu.history',
      samples: [{ ...sample(0, 1), gpu_status: 'error', gpu_message: 'NVML: GPU is lost' }],
    });
    expect(screen.getByRole('alert')).toHaveTextContent('GPU error on node-a: NVML: GPU is lost');
  });
});

describe('addSamples', () => {
  it('keeps an hour per node and leaves other nodes untouched', () => {
    const other = [{ ...sample(0, 1), node: 'node-b' }];
    const fleet = addSamples({ 'node-b': other }, [sample(0, 1), sample(10, 2)]);
    expect(fleet['node-b']).toBe(other);
    expect(fleet['node-a']).toHaveLength(2);
    const later = addSamples(fleet, [sample(WINDOW_MS / 1000 + 5, 3)]);
    expect(later['node-a']!.map((s) => s.host.cpu_percent)).toEqual([2, 3]);
  });
});
