import { describe, expectTypeOf, it } from 'vitest';
import { USER_FIELDS, type User } from './types';

describe('api types', () => {
  it('lists every field of User, and only those, in USER_FIELDS', () => {
    expectTypeOf<(typeof USER_FIELDS)[number]>().toEqualTypeOf<keyof User>();
  });
});
