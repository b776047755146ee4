/** The admin account `qig up` creates from QIG_ADMIN_PASSWORD for the end-to-end run. */
export const ADMIN = { username: 'admin', password: 'e2e-admin-password' } as const;
