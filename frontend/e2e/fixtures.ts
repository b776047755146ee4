import { expect, test as base, type Page } from '@playwright/test';
import { ADMIN } from './credentials';

/** Every test also fails on an uncaught exception in the page. */
export const test = base.extend<{ pageErrors: Error[] }>({
  pageErrors: [
    async ({ page }, use) => {
      const errors: Error[] = [];
      page.on('pageerror', (error) => errors.push(error));
      await use(errors);
      expect(errors, 'uncaught errors in the page').toEqual([]);
    },
    { auto: true },
  ],
});

export { ADMIN, expect };

export async function signIn(page: Page, password: string = ADMIN.password): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Username').fill(ADMIN.username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function signInAsAdmin(page: Page): Promise<void> {
  await signIn(page);
  await expect(page.getByTestId('username')).toHaveText(ADMIN.username);
}
